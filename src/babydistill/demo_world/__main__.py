"""python -m babydistill.demo_world"""

from babydistill.demo_world import main

main()
