from flowyml_sched.cli import main

main()
