from heal_mpi.cli import main

raise SystemExit(main())
