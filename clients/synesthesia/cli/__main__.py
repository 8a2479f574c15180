from synesthesia.cli.app import main

main()
