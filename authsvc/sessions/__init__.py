"""Session stores: where login sessions live (plugins in ``authsvc.session_stores``)."""
