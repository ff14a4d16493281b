from infra.ec2.cli import main

main()
