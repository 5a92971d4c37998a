"""projections_service: the saasfw example's second service, each customer's order totals."""
