from contactbook.cli import main

main()
