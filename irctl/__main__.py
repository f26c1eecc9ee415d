from irctl.cli.app import main

main()
