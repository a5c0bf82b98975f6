import time, torch, timm
from src.models import create_model
torch.manual_seed(0)
for size, bs in [(64,32)]:
  for name in ["ours","timm", "ours-bf16"]:
    mod = create_model("tresnet_m", 21, norm="torch") if name.startswith("ours") else timm.create_model("tresnet_m", num_classes=21)
    mod.train(); opt = torch.optim.Adam(mod.parameters())
    x = torch.rand(bs,3,size,size)
    for i in range(5):
        if i==2: t=time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("bf16")):
            loss = mod(x).float().sigmoid().mean()
        opt.zero_grad(); loss.backward(); opt.step()
    print(name, size, bs*3/(time.time()-t), "img/s train")
