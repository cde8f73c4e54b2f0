// The comparison point of bench/http_bench.py: node's http server verifying the JWT of
// every request with npm's jose against a local JWKS (no cache of verified tokens), one
// process. Usage: node server.mjs PORT JWKS_FILE HEADER
import http from "node:http";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [port, jwksFile, header] = process.argv.slice(2);
const keys = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
const name = header.toLowerCase();

http
  .createServer(async (req, res) => {
    const raw = req.headers[name] || "";
    const token = raw.startsWith("Bearer ") ? raw.slice(7) : raw;
    try {
      const { payload } = await jwtVerify(token, keys, { algorithms: ["RS256"] });
      const body = JSON.stringify({ login: payload.sub, subject: payload.sub });
      res.writeHead(200, { "Content-Type": "application/json", "X-Auth-User": payload.sub });
      res.end(body);
    } catch (err) {
      res.writeHead(401, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ messageId: "jwt.invalid", reason: String(err.code || err) }));
    }
  })
  .listen(Number(port), "127.0.0.1", () => console.log(`ready ${port}`));
