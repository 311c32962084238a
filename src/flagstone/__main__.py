from flagstone.cli.app import main

main()
