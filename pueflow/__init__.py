"""pueflow: AI data-centre telemetry -> ISO/IEC 30134 KPIs and dispatch setpoints."""

__version__ = "0.1.0"
