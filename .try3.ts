import { writeTinyGguf } from './test/helpers/tiny-gguf.ts';
import { getLlama, LlamaLogLevel, resolveChatWrapper, LlamaText } from 'node-llama-cpp';
const tpl = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const tpl2 = "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";
for (const t of [tpl, tpl2]) {
const f = writeTinyGguf({ seed: 1, chatTemplate: t });
const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.warn });
const model = await llama.loadModel({ modelPath: f.path });
console.log('tpl', JSON.stringify(model.fileInfo.metadata.tokenizer.chat_template).slice(0, 40));
const w = resolveChatWrapper(model);
console.log('wrapper', w?.wrapperName);
const st = w!.generateContextState({ chatHistory: [{ type: 'system', text: 'be brief' }, { type: 'user', text: 'hi there' }, { type: 'model', response: [] }] });
console.log(JSON.stringify(st.contextText.toString()), st.contextText.values);
console.log('stops', st.stopGenerationTriggers.map((s) => [s.toString(), s.tokenize(model.tokenizer)]));
console.log(st.contextText.tokenize(model.tokenizer).length);
f.cleanup();
}
