"""The integration tier: a real server (created in process) on a real port, called by a real
client over gRPC or HTTP."""
