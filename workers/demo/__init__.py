"""``exopipe demo``: the whole pipeline on one machine, driven end to end and checked.

It starts what it needs (the local stack if it is down, the ingress and the three workers as
child processes), changes the double's app settings *through* the settings worker, simulates
calls whose webhooks the double sends to the URLs those settings now hold, and waits until every
output is on Kafka. It must never stop anything it did not start (a shared stack stays up).
"""
