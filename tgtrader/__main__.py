from tgtrader.cli import main

raise SystemExit(main())
