from rnnviz.cli import main

main()
