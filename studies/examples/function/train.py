"""A function task: sweeper calls train(params, seed, trial) once per trial.

A small PyTorch MLP fitted to data this file makes itself (a noisy sine), so the example runs
anywhere without a download.
"""

import torch


def make_data(n: int = 512) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1234)  # the data is fixed; the seed varies the model
    x = torch.rand(n, 1, generator=g) * 6 - 3
    y = torch.sin(x) + 0.1 * torch.randn(n, 1, generator=g)
    return x[:384], y[:384], x[384:], y[384:]


def train(params: dict, seed: int, trial) -> dict[str, float]:
    torch.manual_seed(seed)
    x, y, x_val, y_val = make_data()
    model = torch.nn.Sequential(
        torch.nn.Linear(1, params["width"]), torch.nn.Tanh(), torch.nn.Linear(params["width"], 1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9,
                          weight_decay=params["weight_decay"])
    loss_fn = torch.nn.MSELoss()
    for epoch in range(1, params["epochs"] + 1):
        for batch in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
        with torch.no_grad():
            val_loss = loss_fn(model(x_val), y_val).item()
        trial.report(epoch, val_loss=val_loss, train_loss=loss.item())  # may prune the trial
    torch.save(model.state_dict(), trial.dir / "model.pt")  # kept in the trial's directory
    return {"val_loss": val_loss}
