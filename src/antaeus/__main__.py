from antaeus.cli.main import main

main()
