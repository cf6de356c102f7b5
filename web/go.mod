module github.com/natschat/chat/web

go 1.26.0
