from finetune_lab.cli import main

main()
