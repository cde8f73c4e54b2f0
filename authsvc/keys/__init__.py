"""Key providers: where verification keys come from (plugins in ``authsvc.key_providers``)."""
