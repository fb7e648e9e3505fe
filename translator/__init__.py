"""Sans-I/O translation between the OpenAI API and the ChatGPT web backend."""
