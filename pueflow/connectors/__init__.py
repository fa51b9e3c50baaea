"""Sources and sinks: files, wire formats, Parquet store, InfluxDB, Kafka."""
