from diffgym.cli import main

raise SystemExit(main())
