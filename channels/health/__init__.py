"""Channel health, one job a module:

    state    the rules: cooldowns, strikes, rolling stats, healthy/degraded/down
    stores   where it is kept: process memory, or Redis shared by every process
    board    what callers use: reads cached per request, writes, counts flushed in batches
    observe  what follows each upstream attempt on the hot path
    status   durable channel status TokenHub decides (auto-disable, re-enable, operator set)
    probes   tiny real requests through a channel, and which channels need one
    sweep    the error-rate sweep that disables channels over a window
"""
