"""lbsync: keeps an NGINX upstream file on a gateway host in step with a Kubernetes cluster."""

__version__ = "0.2.0"
