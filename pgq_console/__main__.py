from pgq_console.cli import main

main()
