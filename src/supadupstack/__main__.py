from supadupstack.cli import main

raise SystemExit(main())
