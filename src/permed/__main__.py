from permed.launch import main

main()
