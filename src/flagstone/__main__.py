from flagstone.cli.entry import main

main()
