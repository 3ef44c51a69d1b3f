"""python -m babydistill.data.demo_world"""

from babydistill.data.demo_world import main

main()
