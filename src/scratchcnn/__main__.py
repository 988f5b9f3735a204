import sys

from scratchcnn.cli import main

sys.exit(main())
