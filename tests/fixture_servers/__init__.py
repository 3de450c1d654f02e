"""Servers the tests and benchmarks start on loopback: a fault-injecting upstream, a cutting TCP
proxy, the local-model runner. Test code only: the packages ship rag_service and ingest."""
