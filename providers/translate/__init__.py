"""Translation between OpenAI chat-completions (our inside format) and other protocols.

Pure functions and small stream state machines over parsed JSON; no I/O here, so the
adapters (`providers.anthropic`, `providers.gemini`) and the Anthropic inbound endpoint
(`routing.inbound_anthropic`) share them, and the table-driven tests in
`tests/providers/cases/` exercise them field by field.

    translate.anthropic   OpenAI request  -> Messages request,  Message/events -> OpenAI
                          Messages request -> OpenAI request,  OpenAI answer/chunks -> Message/events
    translate.gemini      OpenAI request  -> generateContent,  GenerateContentResponse -> OpenAI
"""
