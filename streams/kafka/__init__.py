"""Kafka plumbing shared by every service: client arguments, topics, the embedded broker, Faust's transport."""
