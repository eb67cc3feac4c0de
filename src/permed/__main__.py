from permed.cli import main

main()
