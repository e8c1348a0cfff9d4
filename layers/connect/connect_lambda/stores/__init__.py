"""What the app keeps in DynamoDB, sealed with KMS: tenants, cached user tokens, and the scheduled refresh."""
