from relora.cli import main

main()
