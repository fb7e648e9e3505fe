"""Tool calls emulated over the ChatGPT web conversation (docs/tool-emulation.md).

``protocol`` writes the prompt (tools, rules, history in our markup), ``parser`` reads calls
back out of the streamed answer text, ``validate`` checks arguments and structured output
against their JSON schemas.  All pure: no I/O.
"""
