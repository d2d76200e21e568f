from capture_server.cli import main

main()
