"""Everything that touches Kafka: the Faust worker, topics, SDKs, services and the CLI."""
