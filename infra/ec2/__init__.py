"""One-host deployment on EC2: python -m infra.ec2 up|status|down (see infra/README.md)."""
