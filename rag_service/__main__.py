from rag_service.cli import main

main()
