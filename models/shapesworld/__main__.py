from models.shapesworld.cli import main

raise SystemExit(main())
