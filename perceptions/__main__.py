from perceptions.cli import main

raise SystemExit(main())
