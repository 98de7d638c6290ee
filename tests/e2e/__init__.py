"""The end-to-end tier: the `neardex` command as a subprocess, `neardex serve` killed and
restarted, TLS end to end, the deployment files, Prometheus, Milvus and Ray clusters."""
