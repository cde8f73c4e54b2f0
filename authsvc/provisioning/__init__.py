"""User provisioners: what a verified identity becomes (plugins in ``authsvc.provisioners``)."""
