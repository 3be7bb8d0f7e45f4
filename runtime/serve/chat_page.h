// The built-in chat page served at / (runtime/serve/chat_page.html, compiled into the binary
// by runtime/serve/embed.cmake).
#pragma once

namespace ktx::serve {
extern const char* const kChatPageHtml;
}  // namespace ktx::serve
