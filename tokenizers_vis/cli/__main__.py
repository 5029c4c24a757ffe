"""`python -m tokenizers_vis.cli ...` is `vistok ...`."""

from tokenizers_vis.cli.main import main

raise SystemExit(main())
