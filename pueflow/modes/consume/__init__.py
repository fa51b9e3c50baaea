"""Consume mode: the Kafka consumer-group service and its checkpoint protocol."""
