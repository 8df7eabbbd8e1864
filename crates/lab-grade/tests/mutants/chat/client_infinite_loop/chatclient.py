# Mutant: never ends and burns a CPU (the sandbox's deadline and CPU limit end it).
while True:
    pass
