from saasfw.k8s._cli import main

raise SystemExit(main())
