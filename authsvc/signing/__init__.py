"""authsvc as a token issuer (CONTRACT §5): its keys, their JWKS, and the assertions it signs."""

from authsvc.signing.assertions import Minted, OutboundAssertion, UpstreamAssertions
from authsvc.signing.keys import KeyRing, SigningKey, SigningKeyError, load_signing_key
from authsvc.signing.service import SigningService, build_assertion, signing_problems

__all__ = [
    "KeyRing",
    "Minted",
    "OutboundAssertion",
    "SigningKey",
    "SigningKeyError",
    "SigningService",
    "UpstreamAssertions",
    "build_assertion",
    "load_signing_key",
    "signing_problems",
]
