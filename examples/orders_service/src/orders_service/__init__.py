"""orders_service: the saasfw example, a multi-tenant orders API."""
