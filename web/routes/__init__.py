"""The app's routes by area: asking (and the chat page), the articles, and the rest (health, API docs)."""
